"""The recognition engine: rules as data, an explainable trace, what should be promoted. It reads and
decides only; `app.services.recognition` edits the rules and carries out a decision."""
