"""`python -m rag_server` is the `rag-server` command."""

from rag_server.cli import main

main()
