from fr_agent.shell.cli import main

main()
