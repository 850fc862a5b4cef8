from spruce.cli import main

main()
