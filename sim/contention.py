"""stub"""
def add_parser(commands):
    commands.add_parser("contention")
def command(args):
    return 0
