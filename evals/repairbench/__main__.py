import sys

from fr_agent.evals.repairbench.bench import main

sys.exit(main())
