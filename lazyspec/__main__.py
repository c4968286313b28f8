from lazyspec.cli import main

main()
