"""`exigo compare`: two or more revisions side by side, in one offline HTML report."""
