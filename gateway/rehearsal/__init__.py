"""`make rehearse` / `make run`: the EP212 production rehearsal on a real regtest network."""
