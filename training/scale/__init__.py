"""Training and batch scoring on a Dask cluster (issue 16; DESIGN section 9).

The same work as the single-process path, run in customer partitions: the training set
(:mod:`training.scale.dataset`; from tables the workers read themselves:
:mod:`training.scale.files`, with what the driver needs of the whole data reduced in
:mod:`training.scale.facts`), the churn and stage models fitted with ``lightgbm.dask``
(:mod:`training.scale.fit`), the pipeline around them (:mod:`training.scale.pipeline`) and
``lifecycle score --all`` (:mod:`training.scale.scoring`). Where it runs is the project
config's ``dask`` section (:mod:`training.scale.cluster`). Nothing happens at import time;
``dask``, ``distributed`` and ``lightgbm.dask`` are imported where they are used.
"""
