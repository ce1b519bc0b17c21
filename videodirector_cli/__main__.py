from videodirector_cli.cli.app import main

main()
