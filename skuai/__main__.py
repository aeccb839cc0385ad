"""`python -m skuai` runs the command line."""

from skuai.cli import main

main()
