"""Training, stage by stage: the config and its presets (:mod:`.config`), where fine-tuning starts
(:mod:`.initialization`, paper Sec. 2.2) and the classifier it starts from (:mod:`.pretrain`), the solver
(:mod:`.optim`), the mini-batches of each step (:mod:`.minibatches`), checkpoints (:mod:`.checkpoint`), the loss
log (:mod:`.log`) and the loop that ties them together (:mod:`.loop`)."""
from .config import PRESETS, TrainConfig, get_preset
