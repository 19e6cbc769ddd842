r"""The paper's claims, trained side by side: single-change ablations (§3.1-§4.2), Figure 1
(ReLU against tanh), bfloat16 against float32 and the columns' specialisation (§6.1, Figure 3);
one module per study (`ablations`, `figure1`, `precision`, `columns`), each trained through
`runner`.

  python -m alexnet_jax.ablate --config=configs/fashion_mnist.py \
      --ablations=lrn,overlap_pool,columns,pca_lighting,dropout,relu --seeds=3 --workdir=DIR

trains the baseline and each variant that removes one ingredient, for every seed, in
DIR/<variant>/seed<k> (an interrupted study resumes: finished runs are kept, a run cut short
resumes from its checkpoints), then writes DIR/ablations.md and DIR/ablations.csv (test top-1
and top-5 error, mean ± std over seeds, the change against the baseline, and the paper's
reported change beside it) and DIR/ablations.png (bars with the seeds' spread).

  python -m alexnet_jax.ablate figure1 --config=... --workdir=DIR [--lrs=...] [--threshold=0.25]

trains the network with ReLU and with tanh, unregularised as in Figure 1 (no dropout, no weight
decay, no PCA lighting, constant ε), for each learning rate of a small sweep, and reports for
each activation the learning rate that reaches the training-error threshold in the fewest
iterations, those iterations and their ratio (the paper: six times fewer with ReLU, to 25 % on
CIFAR-10), in DIR/figure1/figure1.{md,csv,png}. Training error is the train loop's, averaged
over each log interval (random crops and flips included).

  python -m alexnet_jax.ablate precision --config=... --seeds=3 --workdir=DIR

trains the baseline with float32 and with bfloat16 compute (parameters and optimizer state
float32 either way) for every seed and reports whether bfloat16's training-loss curve stays
within float32's seed-to-seed spread (mean |gap| of the mean curves against the mean std over
seeds), with the final test errors, in DIR/precision/precision.{md,csv,png}.

  python -m alexnet_jax.ablate columns --config=... --seeds=3 --workdir=DIR

trains (or reuses) the two-column baseline of each seed in DIR/baseline/seed<k> and reports each
column's conv1 colour specificity (`visualize.colour_specificity`) per seed, and whether one
column is the more colour-specific by --margin in every seed (modulo renumbering, as §6.1
says), in DIR/columns.{md,json}. It needs a colour dataset.
"""
