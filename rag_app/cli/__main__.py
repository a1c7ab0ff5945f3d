from rag_app.cli import main

main()
