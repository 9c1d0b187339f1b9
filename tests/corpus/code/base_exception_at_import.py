class Quit(BaseException):
    def __str__(self):
        raise RuntimeError("no message either")


raise Quit()
