"""The process and its operating system: what differs between systems (portable), Ctrl-C and
SIGTERM (signals), and files written whole or not at all (output)."""
