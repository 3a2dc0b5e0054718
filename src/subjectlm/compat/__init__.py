"""What other projects' users bring: their scripts' flags, prompts, scoring and files, translated at the edge.

It sits above the stages (it may import eval) and below the commands, so the stages carry none of it.
"""
