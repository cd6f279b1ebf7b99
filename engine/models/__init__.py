"""Networks: shared backbones (`backbones.build_backbone`), the WSDDN + OICR teacher (`wsddn`), the
student (`student`), and the registry of trained versions (`registry`)."""
