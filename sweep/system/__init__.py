"""The process and its operating system: what differs between systems (portable), Ctrl-C and
SIGTERM (signals), lines printed while work goes on (console), files written whole (output)."""
