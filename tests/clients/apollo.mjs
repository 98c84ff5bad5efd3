// Apollo Client with automatic persisted queries, hashed queries sent over GET as a CDN would see
// them. Prints one JSON object: the results and every HTTP request Apollo made.
// Usage: node apollo.mjs <http-url> <token> <customer-name>
import { createHash } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client";
import { PersistedQueryLink } from "@apollo/client/link/persisted-queries";

const [url, token, name] = process.argv.slice(2);

const requests = [];
async function recordingFetch(input, init = {}) {
  const target = new URL(typeof input === "string" ? input : input.url);
  const body = init.body ? JSON.parse(init.body) : null;
  const response = await fetch(input, init);
  requests.push({
    method: init.method || "GET",
    sentQuery: Boolean(target.searchParams.get("query") || body?.query),
    sentHash: Boolean(target.searchParams.get("extensions") || body?.extensions?.persistedQuery),
    status: response.status,
  });
  return response;
}

const sha256 = (document) => createHash("sha256").update(document).digest("hex");
const link = new PersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
  new HttpLink({ uri: url, fetch: recordingFetch, headers: { authorization: `Bearer ${token}` } }),
);
const client = new ApolloClient({ link, cache: new InMemoryCache() });

const CREATE = gql`
  mutation Create($name: String!) {
    customerCreate(input: { name: $name }) { customer { id number name } errors { code } }
  }
`;
const READ = gql`
  query Read($id: ID!) { customer(id: $id) { id number name } }
`;

const created = await client.mutate({ mutation: CREATE, variables: { name } });
const id = created.data.customerCreate.customer.id;
const first = await client.query({ query: READ, variables: { id }, fetchPolicy: "network-only" });
const second = await client.query({ query: READ, variables: { id }, fetchPolicy: "network-only" });

console.log(JSON.stringify({ created: created.data, first: first.data, second: second.data, requests }));
