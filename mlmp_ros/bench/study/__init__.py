"""The bundled world model (:mod:`mlmp_ros.world`) measured: :mod:`.model_card` (its properties and the
8-scene method scores the model card cites), :mod:`.method_table` and :mod:`.table_summary` (the method
table on fresh held-out scenes, and its summary with intervals), :mod:`.why` and :mod:`.why_summary`
(what MLMP's steps do to an image, and why MLMP loses where it loses)."""
