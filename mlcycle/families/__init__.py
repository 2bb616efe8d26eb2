"""Model families (rf: the forest, nn: the Keras network) behind one interface."""

FAMILY_NAMES = ("rf", "nn")
