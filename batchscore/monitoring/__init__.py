"""What a run tells its operator: the drift profile counted as rows are written, the run summary,
and the HTML report of a job's nights. Below inference because every output builder counts the
profile of the rows it writes."""
