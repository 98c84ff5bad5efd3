// The official graphql-ws client: subscribes with the token in connectionParams and prints each
// message as a JSON line ({"next": ...}, {"error": ...}, {"closed": {code, reason}}, {"complete": true}).
// Usage: node subscribe.mjs <ws-url> <token> <query> [variables-json]
import { createClient } from "graphql-ws";
import WebSocket from "ws";

const [url, token, query, variables] = process.argv.slice(2);
const print = (message) => console.log(JSON.stringify(message));

const client = createClient({
  url,
  webSocketImpl: WebSocket,
  connectionParams: { token },
  retryAttempts: 0,
  on: {
    connected: () => print({ connected: true }),
    closed: (event) => print({ closed: { code: event.code, reason: event.reason } }),
  },
});

client.subscribe(
  { query, variables: variables ? JSON.parse(variables) : {} },
  {
    next: (data) => print({ next: data }),
    error: (error) => {
      print({ error: error instanceof Error ? error.message : error.code ? { code: error.code, reason: error.reason } : error });
      process.exit(0);
    },
    complete: () => {
      print({ complete: true });
      process.exit(0);
    },
  },
);
