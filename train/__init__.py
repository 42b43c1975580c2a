"""Stage-two fine-tuning on reviewer-corrected captions, evaluation, and training jobs.

`train.trainer.train(options)` fine-tunes a base model on an export of the review queue;
`train.evaluate.evaluate(...)` captions the held-out split and scores it; `train.jobs.JobRunner`
runs training as a separate process for the web app; `train.versions` lists what was trained.
Nothing here imports torch at import time.
"""
