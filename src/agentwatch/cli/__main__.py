from agentwatch.cli import main

main()
