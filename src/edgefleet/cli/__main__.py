from edgefleet.cli.main import main

main()
