from nvr_cli.cli import main

main()
