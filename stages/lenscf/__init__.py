"""The library behind the stage scripts in stages/: one module per concern.

Dependencies point one way: a module imports only modules listed above it (tests/test_pipeline.py checks).

    errors      the one error a user can cause, and how a script reports it
    releases    the MovieLens releases, their formats and rating scales, and reading them
    archive     fetching an archive, checking its digests, and extracting it safely
    params      params.yaml, one schema per stage and per model
    artifacts   atomic, byte-deterministic outputs, and reading them back
    splits      the encoded splits as tensors, read through one function
    models      the models, each an nn.Module whose forward() is its formula
    checkpoints saving and loading trained models
    scoring     a trained model's rating predictions (with cold-start fallbacks) and its top-N lists
    als         implicit ALS's fit: closed-form solves by conjugate gradient, the users' then the items'
    engine      the training engine: batches, gradients, lazy Adam, early stopping and refit
    metrics     rating-error and ranking metrics, and their bootstrap intervals
    evaluation  one model's evaluation: the sections of its metrics file and its plot data

models, scoring and metrics import nothing of params or releases; evaluation never imports the engine.
"""
