"""Figures: generated kernels (HyperNetworks Fig. 2, 12, 13) and HyperLSTM dynamics (Fig. 4, 5)."""
