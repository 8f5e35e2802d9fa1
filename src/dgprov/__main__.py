from dgprov.cli import main

main()
