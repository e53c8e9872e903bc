"""Analysis: a study's results as Parquet, paper-layout tables and verdicts, figures, and the folder
to commit. It reads the store and never imports Ray or Tune."""
