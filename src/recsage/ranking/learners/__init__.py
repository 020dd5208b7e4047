"""Learned rankers: FM, NFM, DeepFM, DIN (torch) and LambdaMART (LightGBM)."""
