"""Where the labels lose: label issues (cleanlab's confident learning on out-of-sample probabilities), confusable
category pairs and what merging each would buy, and conflicting duplicates. Used by the ``review`` stage."""
