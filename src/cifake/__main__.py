from cifake.cli import main

main()
