"""Input: datasets behind one interface (`sources`), image decoding (`images`), the paper's
augmentation in grain (`pipeline`), the dataset statistics (`stats`) and the on-device half of
the preprocessing (`normalize`)."""
