"""Networks: shared backbones (`backbones.build_backbone`), the WSDDN + OICR teacher (`wsddn`), the
student (`student`), and the registry of trained versions (`registry`). Names the configuration
checks without loading torch live here."""

REGION_HEADS = ("fc", "trunk", "dilated")   # the teacher's region heads (engine.models.wsddn)
