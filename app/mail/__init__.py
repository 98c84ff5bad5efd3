"""Mail: reading MIME, the IMAP client and the SMTP listener. The rules that decide and write are in app.services.mail."""
