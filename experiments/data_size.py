"""Study 3 (C4, C4b, C8): training-set size and network size (Srivastava et al. 2014 Figure 10).

Dropout (0.2 input, 0.5 hidden) against no dropout over training sizes and hidden widths. Every run
has the same budget of optimisation steps with the same learning-rate schedule (schedules follow
training progress, not epochs) and is checked on validation about equally often in steps (one epoch of
the largest set), so that early stopping treats small and large sets alike; each arm's learning
rate is chosen on validation.
"""

from harness.sweep.profiles import base, pick, replicates

NAME = "data_size"


def configs(profile: str):
    b = base(profile)
    sizes = pick(profile, smoke=[50, 200, 800], quick=[100, 1000, 3600], paper=[100, 500, 1000, 5000, 10000, 50000])
    widths = pick(profile, smoke=[8, 32], quick=[64, 256], paper=[256, 1024, 4096])
    steps = pick(profile, smoke=40, quick=3600, paper=50_000)  # budgets: 100 epochs of the largest set (quick)
    check = pick(profile, smoke=8, quick=36, paper=500)
    seeds = replicates(profile)  # the largest look's; `harness run --look K` runs the first K looks'
    runs = []
    for size in sizes:
        for w in widths:
            for p_in, p_hid in ((0.2, 0.5), (0.0, 0.0)):
                for s in seeds:
                    runs.append(
                        b.replace(
                            seed=s,
                            **{
                                "data.train_size": size,
                                "model.widths": [w, w],
                                "model.p_drop_input": p_in,
                                "model.p_drop_hidden": [p_hid],
                                "train.steps": steps,
                                "train.check_every_steps": check,
                            },
                        )
                    )
    return runs
