"""The names under which a study marks what it writes into Optuna's storage (a leaf: names only)."""

UID_ATTR = "bss_study.uid"  # the Optuna study's user attribute naming the study folder's record
TUNE_TRIAL_ATTR = "tune_trial_id"  # the user attribute linking an Optuna trial to its Tune trial
