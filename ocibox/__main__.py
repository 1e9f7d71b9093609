from ocibox.cli import main

main()
