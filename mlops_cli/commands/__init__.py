"""The ``mlops`` commands, one module per part of the domain; ``mlops_cli.main`` registers them."""
