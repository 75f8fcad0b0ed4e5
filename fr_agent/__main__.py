from fr_agent.cli import main

main()
