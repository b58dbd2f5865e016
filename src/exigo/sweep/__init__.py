"""`exigo sweep sweep.yaml`: an Optuna search whose every trial is one real DVC experiment
(run.py drives it; config.py reads sweep.yaml; study.py, trial.py and workspace.py hold the
study, one watched trial and the workers' clones).
"""
