"""The optional components of REFERENCE_EXTRA.md and hrem's own options; the defaults are the MCN baseline.

Each is switched on by its card section and wired in once, by hrem.grounding.parts (model side) or
hrem.grounding.criterion (training side):
- step, step_res_head: STEP's see-through-text RES head (`res_head: step`);
- ca2m, ca2m_fusion: multi-grained CA2M fusion (`fusion: ca2m`), box_regression: its direct [CLS] box head;
- mask_refine: hrem's stride-4 mask refinement (`mask_refine.enabled`);
- xtask: cross-task consistency transfer nets (`xtask.enabled`, training only);
- self_paced: the Gaussian self-paced sample weighting (`loss_weighting: self_paced`, training only).
"""
