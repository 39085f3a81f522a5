"""Training a bundle: settings and checkpoints, ONE epoch loop for language-model pretraining and the
classifier, epoch selection and averaging, calibration, the model card; `job.run_training` is what
`batchscore train` does. Determinism: epoch e shuffles with a generator seeded by (seed, e) and
dropout keys derive from (seed, step), so a resumed run takes exactly the steps of an uninterrupted one."""
