"""What a user looks at: the one class palette, the matplotlib figures, the offline Vega bundle
that `dvc plots` and the reports render with.
"""
