"""Flowmetal's single-host daemon: it owns the runtime, serves clients over a Unix
socket in the home directory, and supervises batch jobs.

- `protocol` — length-prefixed JSON frames, the size cap, peer credentials;
- `server`   — `Daemon` (lock file, socket, recovery, requests, graceful shutdown);
- `batches`  — the durable batch supervisor;
- `client`   — `Client`, what the CLI uses to talk to the daemon;
- `views`    — read-only views of the store for `status`, `history`, `inspect`, ...

Only `protocol` and `client` are light to import; the CLI reaches for the rest lazily.
"""
