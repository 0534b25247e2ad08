"""data: the datasets the harness trains and evaluates on, from a name to standardized tensors.

`registry` (SPECS: every named dataset's shape, sizes, files, download and loader), `formats` (IDX,
CIFAR pickles, .npz, read without running code), `validation` (what is wrong with parsed arrays),
`splits` (seeded stratified splits), `datasets` (load_raw, load_dataset, describe, fingerprint),
`fetch` (downloads with checksums), `shifts` (rotated, corrupted and unseen evaluation sets),
`standins` (stand-in files in the standard layouts). May import harness.config, harness.errors and
harness.files only.
"""
