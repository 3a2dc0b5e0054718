"""Pure scores shared by the stages (no model, no files): a foundation layer, like io and config.

    text.py   an answer against a reference: SQuAD/CMRC normalisation, exact, contains, token-F1, key facts
    stats.py  paired before/after statistics: bootstrap intervals of a mean (difference), exact sign test
"""
