"""What only training needs: targets, the per-sample loss terms, the task switches and loss balancing.

hrem.grounding.criterion combines them into the training loss; GroundingModel itself imports none of it.
"""
