"""JSON Schemas of the JSON documents batchscore writes (each carries its `schema_version`)."""
