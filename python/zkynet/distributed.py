"""zkynet.distributed: MPI collectives and messages as differentiable graph operators, under
mpi4torch's names. Run the script under MPI, e.g. `mpiexec -n 4 python3 train.py`.

    from zkynet import distributed as dist
    from zkynet.framework import cg, op

    comm = dist.COMM_WORLD          # comm.rank, comm.size

    class Loss(cg.Module):
        def __init__(self):
            super().__init__(inputs=(cg.Variable("x"),), params=(cg.Parameter("w", 1.0),))

        def call(self, x):
            local = op.sum(op.square(op.mult(x, self.param("w"))))
            return comm.Allreduce(local, dist.MPI_SUM)      # the same total on every rank

    loss = Loss()(x_of_this_rank)
    loss.back()                     # every rank calls back(): gradients cross ranks too

As in mpi4torch, the objective differentiated is the sum over ranks of each rank's root, so
a total that every rank returns, as above, counts once per rank: each rank's w gets size times
d(total)/d(its w). Parameters averaged in call with Allreduce(p, MPI_SUM) / size (data-parallel
training) get d(total)/d(average) on every rank.
Backward visits every communication node of a graph, also those no gradient reaches, so the
ranks' backward calls always match (a Wait whose result is unused needs no JoinDummies).

Training drivers over the same communicators (the model built identically on every rank):

    dp = dist.DataParallel(model)       # every rank starts from rank 0's parameters
    dp.attach(estimator)                # estimator.fit(x, y) now trains on this rank's shards
    # or by hand: begin, end = dp.shard(len(x)); ... loss.back(); dp.average_gradients(end - begin)

    pipe = dist.Pipeline(sequential, micro_batches=4)     # one stage of layers per rank
    opt = optim.SGD(pipe.parameters(), lr=0.1)            # this stage's parameters
    opt.zero_grad(); pipe.train_step(x, y, op.cross_entropy); opt.step()
    logits = pipe.predict(x)                              # on the last stage; None elsewhere
    logits = pipe.predict(x, deliver_to=dist.Pipeline.ALL_RANKS)   # or deliver_to=0: one rank
    grads = pipe.gradients(root=0)    # rank 0: {"0.weight": ..., ...} as model.named_parameters(); None elsewhere
    # dist.Pipeline(sequential, input_requires_grad=True): pipe.input_grad() after a step is
    # d loss / d x on the first stage (None elsewhere), as DaggerFlux's pullback gives it

Importing this module loads MPI (`import zkynet` alone does not), starts it, and makes an
uncaught exception on any rank end the whole job (MPI_Abort) instead of leaving the other ranks
waiting. Ranks never wait silently: checked mode (set_checked) compares every collective call
across ranks, backward ones included; a rank waiting for one whose script has ended aborts the
job; and set_timeout(seconds) (or the environment variable ZKYNET_DIST_TIMEOUT) aborts a
communication that does not complete in time, naming it and what the ranks it waits for are
doing.
"""
import importlib
import sys
import time

# MPI lives in its own extension, loaded here only: `import zkynet` alone does not load it.
_EXTENSION = __package__ + "._zkynet_distributed"
try:
    _dist = importlib.import_module(_EXTENSION)
except ModuleNotFoundError as error:
    if error.name != _EXTENSION:
        raise
    raise ImportError("zkynet.distributed: this zkynet was built without distributed/ "
                      "(configure with -DZKYNET_BUILD_DISTRIBUTED=ON and MPI installed)") from None

Communicator = _dist.Communicator
WaitHandle = _dist.WaitHandle
ReduceOp = _dist.ReduceOp
DataParallel = _dist.DataParallel
Pipeline = _dist.Pipeline

MPI_SUM = ReduceOp.SUM
MPI_AVG = ReduceOp.AVG
MPI_MAX = ReduceOp.MAX
MPI_MIN = ReduceOp.MIN
MPI_PROD = ReduceOp.PROD

COMM_WORLD = _dist.world()

JoinDummies = _dist.JoinDummies
JoinDummiesHandle = _dist.JoinDummiesHandle
set_checked = _dist.set_checked
checked = _dist.checked
set_timeout = _dist.set_timeout
timeout = _dist.timeout
abort = _dist.abort
nccl_built = _dist.nccl_built

# COMM_WORLD's methods as module functions: dist.Allreduce(x, dist.MPI_SUM).
Allreduce = COMM_WORLD.Allreduce
Reduce_ = COMM_WORLD.Reduce_
Bcast_ = COMM_WORLD.Bcast_
Gather = COMM_WORLD.Gather
Allgather = COMM_WORLD.Allgather
Scatter = COMM_WORLD.Scatter
Alltoall = COMM_WORLD.Alltoall
Send = COMM_WORLD.Send
Recv = COMM_WORLD.Recv
Isend = COMM_WORLD.Isend
Irecv = COMM_WORLD.Irecv
Wait = COMM_WORLD.Wait


def allreduce_array(x, op=MPI_SUM, comm=COMM_WORLD):
    """The reduction of every rank's array (no graph: e.g. between training steps), as a new array."""
    return _dist.allreduce_array(x, op, comm)


def bcast_array(x, root=0, comm=COMM_WORLD):
    """root's array on every rank (no graph: e.g. initial weights), as a new array."""
    return _dist.bcast_array(x, root, comm)


_OUTPUT_GRACE_SECONDS = 0.25


def _abort_job_after(previous_hook):
    """An excepthook that reports the exception as before, then ends every rank of the job:
    the other ranks would otherwise wait forever for this one in their next communication."""

    def hook(kind, value, traceback):
        try:
            previous_hook(kind, value, traceback)
        finally:
            if COMM_WORLD.size > 1:
                sys.stdout.flush()
                sys.stderr.flush()
                # mpiexec forwards the ranks' output asynchronously and MPI_Abort tears the job
                # down at once: without a moment's pause the traceback is sometimes lost.
                time.sleep(_OUTPUT_GRACE_SECONDS)
                abort(f"uncaught {kind.__name__}: {value}", 1)

    hook.zkynet_aborts_job = True
    return hook


if not getattr(sys.excepthook, "zkynet_aborts_job", False):
    sys.excepthook = _abort_job_after(sys.excepthook)

__all__ = ["COMM_WORLD", "Communicator", "WaitHandle", "ReduceOp", "MPI_SUM", "MPI_AVG", "MPI_MAX", "MPI_MIN",
           "MPI_PROD", "Allreduce", "Reduce_", "Bcast_", "Gather", "Allgather", "Scatter", "Alltoall", "Send", "Recv",
           "Isend", "Irecv", "Wait", "JoinDummies", "JoinDummiesHandle", "set_checked", "checked", "set_timeout",
           "timeout", "abort", "nccl_built", "allreduce_array", "bcast_array", "DataParallel", "Pipeline"]
