"""The tdx-contention application: the command line and the web server."""
