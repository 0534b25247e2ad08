"""Published reference numbers (../shared/DESIGN.md) shown beside the paper profile's own."""

import pandas as pd

REFERENCE = pd.DataFrame(
    [
        ("Srivastava et al. 2014, Table 2", "standard net (no dropout)", "weight_scaled", 1.60),
        ("Srivastava et al. 2014, Table 2", "dropout ReLU 3x1024", "weight_scaled", 1.25),
        ("Srivastava et al. 2014, Table 2", "dropout + max-norm ReLU 3x1024", "weight_scaled", 1.06),
        ("Srivastava et al. 2014, Table 2", "dropout + max-norm ReLU 2x4096", "weight_scaled", 1.01),
        ("Srivastava et al. 2014, Table 2", "dropout + max-norm ReLU 2x8192", "weight_scaled", 0.95),
        ("Ma et al. 2017, Table 1", "3x1024 ReLU", "weight_scaled", 1.19),
        ("Ma et al. 2017, Table 1", "3x1024 ReLU", "mc_shared (100)", 1.04),
        ("Ma et al. 2017, Table 1", "3x1024 ReLU + max-norm", "weight_scaled", 1.05),
        ("Ma et al. 2017, Table 1", "3x1024 ReLU + max-norm", "mc_shared (100)", 1.02),
        ("Ma et al. 2017, Table 1", "2x4096 ReLU + max-norm", "weight_scaled", 1.03),
        ("Ma et al. 2017, Table 1", "2x4096 ReLU + max-norm", "mc_shared (100)", 0.92),
    ],
    columns=["source", "network", "inference", "test_error_%"],
)
NOTE = (
    "Permutation-invariant MNIST test error. Srivastava et al. 2014 Figure 11: Monte-Carlo averaging of k "
    "subnetworks matches weight scaling at about k = 50 and is slightly better beyond, within one standard "
    "deviation."
)
