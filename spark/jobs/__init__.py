"""One module per job, each runnable as ``python -m spark.jobs.<job>`` or as the SparkApplication's
mainApplicationFile (``local:///opt/marketing-engine/spark/jobs/<job>.py`` with PYTHONPATH set)."""
