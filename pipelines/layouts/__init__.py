"""The dataset layouts, one module per family: each reads a dataset's official list files (or its
folder tree) into a ``DatasetListing``.

Every layout module has one ``list_<format>(input_dir, split_id)`` that returns the listing and
``{split: why it is not listed}`` for the splits the layout skips (a test split without labels);
``pipelines.datasets.list_dataset`` picks the function by ``--dataset_format`` and is the only
caller. ``list_files`` holds what the layouts share (reading list files, their errors, walks).
"""
